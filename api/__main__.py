"""``python -m api``: serve the API with uvicorn."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import uvicorn

from api.app import create_app
from api.server import http_protocol
from api.settings import ApiSettings
from api.store.sql import StoreError
from streamer.cliutil import parser_for
from streamer.gctuning import tune_gc
from streamer.logfilter import rate_limit_logging

DESCRIPTION = """\
Serve churnwatch's API: account health, alerts, portfolio figures, HTTP ingest (native and
Segment/RudderStack), the dashboard on /dashboard and the OpenAPI reference on /docs. Reads the
health and alert topics into its read store (CHURNWATCH_STORE_URL); /readyz answers 200 once caught
up and while Kafka answers."""


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    """Parse the command line, build the app and serve it."""
    parser = parser_for(prog or "python -m api", DESCRIPTION, ApiSettings)
    parser.add_argument("--host", default=None, help="overrides CHURNWATCH_API_HOST")
    parser.add_argument("--port", type=int, default=None, help="overrides CHURNWATCH_API_PORT")
    args = parser.parse_args(argv)
    settings = ApiSettings()
    logging.basicConfig(level=settings.log_level, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    # A broker outage made aiokafka log the same errors thousands of times a second.
    rate_limit_logging()
    try:
        app = create_app(settings)
    except StoreError as err:
        raise SystemExit(f"churnwatch api: {err}") from None
    tune_gc()
    uvicorn.run(
        app,
        host=args.host or settings.api_host,
        port=args.port or settings.api_port,
        # uvicorn's loggers keep no handlers of their own: they go through the root logger set up
        # above, like the API's and aiokafka's, in one format.
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=False,
        http=http_protocol(settings.head_timeout_s),
        loop="uvloop",
    )


if __name__ == "__main__":
    main()
