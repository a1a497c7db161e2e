from producer.cli import app

app()
