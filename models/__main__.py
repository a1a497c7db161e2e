from models.cli import app

app()
