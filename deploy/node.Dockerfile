# syntax=docker/dockerfile:1
#
# `concord node` as a container image, for deploy/kubernetes/node.yaml: a
# static binary (CGO_ENABLED=0) on an empty base image (scratch), run as
# the non-root user 65532. Build from the repository root:
#
#   docker build -f deploy/node.Dockerfile -t concord-node .
#
# The node keeps its JetStream state under /data: mount a volume there (the
# StatefulSet's volumeClaimTemplates do).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/concord ./cmd/concord \
    && mkdir -p /out/data

FROM scratch
COPY --from=build /out/concord /concord
# CA certificates for TLS to NATS or other services (scratch has none).
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
EXPOSE 4222 6222 8222
ENTRYPOINT ["/concord"]
CMD ["node", "-data=/data", "-listen=0.0.0.0:4222", "-http=0.0.0.0:8222", "-log-format=json"]
