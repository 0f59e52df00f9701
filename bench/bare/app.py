"""The cold-start yardstick: the barest FastAPI + Mangum function there is."""
from fastapi import FastAPI
from mangum import Mangum

app = FastAPI(docs_url=None, redoc_url=None)


@app.get("/hello")
async def hello():
    return {"hello": "world"}


handler = Mangum(app, lifespan="off")
