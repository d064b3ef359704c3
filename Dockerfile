# One image for `opspawn operator` and `opspawn runner`: non-root, read-only-root friendly.
#
# BASE_IMAGE is any Debian-like image with python3 >= 3.11 and its venv module: the official
# Python slim image by default, or the Debian base `make image` makes with mmdebstrap (Debian's
# python is externally managed and has no pip, hence the virtualenv). The project goes into the
# venv /opt/opspawn; the final stage copies only that venv onto a clean base. No `RUN --mount`:
# Docker's classic builder refuses it, and COPY --from does the same job.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/opspawn
WORKDIR /src
# The dependencies first, in a layer of their own: a change of the sources alone rebuilds only
# the steps after it. Packages' own test suites, C sources, headers and type stubs go;
# everything is precompiled to unchecked-hash pycs, which an import never re-validates or tries
# to rewrite (read-only root). Shared objects stay unstripped (strip would save about 40 MB):
# strip can break the patchelf-edited libraries of auditwheel-repaired wheels.
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > requirements.txt \
    && /opt/opspawn/bin/pip install --no-compile --requirement requirements.txt \
    && find /opt/opspawn -depth -type d -path '*/site-packages/*' \
        \( -name __pycache__ -o -name tests -o -name test \) -exec rm -rf {} + \
    && find /opt/opspawn -type f -path '*/site-packages/*' \
        \( -name '*.pyi' -o -name '*.c' -o -name '*.h' -o -name '*.pyx' -o -name '*.pxd' \) -delete \
    && python3 -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/opspawn
COPY README.md ./
COPY api ./api
COPY operator ./operator
COPY runner ./runner
COPY src ./src
# The project itself; then what only installing needs goes (pip, setuptools, activate scripts).
RUN /opt/opspawn/bin/pip install --no-compile --no-deps . \
    && /opt/opspawn/bin/pip uninstall --yes pip setuptools \
    && rm -f /opt/opspawn/bin/activate* /opt/opspawn/bin/pip* \
    && python3 -m compileall -q -j 0 --invalidation-mode unchecked-hash \
        /opt/opspawn/lib/python3*/site-packages/opspawn

FROM ${BASE_IMAGE}
COPY --from=build /opt/opspawn /opt/opspawn
ENV PATH=/opt/opspawn/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
USER 65532:65532
ENTRYPOINT ["opspawn"]
CMD ["--help"]
