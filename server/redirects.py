from starlette.routing import BaseRoute

routes: list[BaseRoute] = []  # placeholder until the redirect route lands
