"""seqlab-serve: serve an exported bundle over HTTP (FastAPI on uvicorn), on 127.0.0.1 unless `host` says otherwise."""

import sys

import hydra
from omegaconf import DictConfig

from seqlab.cli.config_checks import check_override_types, refuse_null_groups
from seqlab.errors import SeqlabError, reports_errors


@reports_errors
def serve(cfg: DictConfig) -> None:
    """Check and load `bundle`, then answer requests until interrupted."""
    # Uvicorn, FastAPI and torch when serving starts, not for --help.
    import uvicorn

    from seqlab.deploy.loading import predictor_for_bundle
    from seqlab.deploy.service import ServiceLimits, create_app

    check_override_types(cfg)
    if not cfg.get("bundle"):
        raise SeqlabError("seqlab-serve needs bundle=<dir written by seqlab-export>")
    if not 1 <= cfg.port <= 65535:
        raise SeqlabError(f"port={cfg.port} is not a TCP port: use one from 1 to 65535")
    limits = ServiceLimits(
        max_batch_size=cfg.max_batch_size,
        batch_timeout_ms=cfg.batch_timeout_ms,
        max_texts_per_request=cfg.max_texts_per_request,
        max_text_chars=cfg.max_text_chars,
        max_body_bytes=cfg.max_body_bytes,
    )
    for name, value in vars(limits).items():
        if value <= 0:
            raise SeqlabError(f"{name} must be positive, got {value}")
    predictor = predictor_for_bundle(cfg.bundle, "seqlab-serve", cfg.device, cfg.trusted_packages)
    app = create_app(predictor, limits, info={"bundle": str(cfg.bundle)})
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level)


def main() -> None:
    """seqlab-serve: refuse a config group set to null in one line, then run Hydra on the command line."""
    refuse_null_groups(sys.argv[1:])
    run_serve()


@hydra.main(version_base="1.3", config_path="pkg://seqlab.conf", config_name="serve")
def run_serve(cfg: DictConfig) -> None:
    serve(cfg)


if __name__ == "__main__":
    main()
