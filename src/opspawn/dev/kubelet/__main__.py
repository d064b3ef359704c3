"""`python -m opspawn.dev.kubelet`: run the process kubelet until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path
from types import FrameType

from kubernetes import config

from opspawn.dev.kubelet.kubelet import DEFAULT_NODE_NAME, ProcessKubelet


def main() -> None:
    parser = argparse.ArgumentParser(description="Process kubelet (dev/test only).")
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--node-name", default=DEFAULT_NODE_NAME)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    api = config.new_client_from_config(config_file=str(arguments.kubeconfig))
    kubelet = ProcessKubelet(api, arguments.workdir, arguments.node_name)

    def stop(signum: int, frame: FrameType | None) -> None:
        kubelet.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    kubelet.run()


if __name__ == "__main__":
    main()
