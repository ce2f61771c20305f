"""The ranking service: the serving engine (service.engine and the parts it puts
together) and the FastAPI app over it (service.app, thin routers in service.routes)."""
