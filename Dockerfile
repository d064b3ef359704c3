# One image for `opspawn operator` and `opspawn runner`: non-root, read-only-root friendly.
#
# BASE_IMAGE is any Debian-like image with python3 >= 3.11 and its venv module: the official
# Python slim image by default, or the Debian base `make image` makes with mmdebstrap (Debian's
# python is externally managed and has no pip, hence the virtualenv). The project goes into the
# venv /opt/opspawn; the final stage copies only that venv onto a clean base.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/opspawn
WORKDIR /src
COPY pyproject.toml README.md ./
COPY api ./api
COPY operator ./operator
COPY runner ./runner
COPY src ./src
# Install without bytecode, drop what only installing needs (pip, setuptools, their scripts)
# and the test suites packages ship, then precompile everything once: at start nothing has to
# write, and an import never finds a stale .pyc (unchecked-hash pycs are never re-validated).
RUN /opt/opspawn/bin/pip install --no-compile . \
    && /opt/opspawn/bin/pip uninstall --yes pip setuptools \
    && rm -f /opt/opspawn/bin/activate* /opt/opspawn/bin/pip* \
    && find /opt/opspawn -depth -type d \( -name __pycache__ -o -name tests -o -name test \) \
        -path '*/site-packages/*' -exec rm -rf {} + \
    && python3 -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/opspawn

FROM ${BASE_IMAGE}
COPY --from=build /opt/opspawn /opt/opspawn
ENV PATH=/opt/opspawn/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
USER 65532:65532
ENTRYPOINT ["opspawn"]
CMD ["--help"]
