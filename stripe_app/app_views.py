from starlette.routing import BaseRoute

routes: list[BaseRoute] = []  # placeholder until the Stripe App endpoints land
