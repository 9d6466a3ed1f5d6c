"""Start the monitor: the pages, the WebSocket push and the scheduler, in one process on one port.

    python app.py [--config instances.toml] [--host 127.0.0.1] [--port 5001] [--path-prefix /monitor]

Each option can also be set with an environment variable: DBMON_CONFIG, DBMON_HOST, DBMON_PORT,
DBMON_PATH_PREFIX, DBMON_ALLOWED_ORIGINS (comma-separated origins allowed to open the WebSocket).
"""

import argparse
import logging
import sys

from dashapp.logsetup import configure_logging
from dashapp.service import Settings, normalize_prefix, run


def parse_settings(argv: list[str]) -> Settings:
    defaults = Settings.from_environment()
    parser = argparse.ArgumentParser(
        description="Real-time database instance monitor",
        epilog="Environment variables set the same options: DBMON_CONFIG, DBMON_HOST, DBMON_PORT, "
               "DBMON_PATH_PREFIX and DBMON_ALLOWED_ORIGINS (comma-separated). Options win.")
    parser.add_argument("--config", default=defaults.config_path, help="instances file (default %(default)s)")
    parser.add_argument("--host", default=defaults.host, help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=defaults.port, help="port to listen on (default %(default)s)")
    parser.add_argument("--path-prefix", default=defaults.path_prefix,
                        help="URL prefix when served behind a reverse proxy, e.g. /monitor (default %(default)s)")
    parser.add_argument("--allowed-origin", action="append", default=list(defaults.allowed_origins),
                        help="an extra origin allowed to open the WebSocket; repeat for several")
    parser.add_argument("--no-reload", action="store_true", help="do not reload the instances file when it changes")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default %(default)s)")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    return Settings(config_path=args.config, host=args.host, port=args.port,
                    path_prefix=normalize_prefix(args.path_prefix),
                    allowed_origins=tuple(args.allowed_origin), reload=not args.no_reload)


if __name__ == "__main__":
    sys.exit(run(parse_settings(sys.argv[1:])))
