# rawevents with its embedded store. Build: docker build -t rawevents .
# Run:   docker run -p 127.0.0.1:8000:8000 -v rawevents-data:/data rawevents
# The install step is docker/install.sh; tests run it (and this CMD and HEALTHCHECK) without Docker.

FROM python:3.11-slim AS build
COPY pyproject.toml README.md /src/
COPY rawevents /src/rawevents
COPY docker/install.sh /usr/local/bin/rawevents-install
RUN PIP_NO_CACHE_DIR=1 sh /usr/local/bin/rawevents-install /src /opt/rawevents

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home rawevents \
    && mkdir /data && chown rawevents:rawevents /data && chmod 0700 /data
COPY --from=build /opt/rawevents /opt/rawevents
ENV PATH=/opt/rawevents/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RAWEVENTS_DATA_DIR=/data \
    RAWEVENTS_PORT=8000
USER rawevents
WORKDIR /data
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["python", "-m", "rawevents.healthcheck"]
CMD ["rawevents", "serve", "--host", "0.0.0.0"]
