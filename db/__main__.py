from db.cli import app

app()
