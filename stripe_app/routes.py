from starlette.routing import BaseRoute

routes: list[BaseRoute] = []  # placeholder until the webhook receiver lands
