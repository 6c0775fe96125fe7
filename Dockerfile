# parley's image: the one static binary on Alpine, run as an unprivileged
# user, with the node's home as a volume.
#
#   docker build --build-arg PARLEY_REVISION="$(git rev-parse HEAD)" -t parley .
#   docker run -d --init --name parley -p 4001:4001/tcp -p 4001:4001/udp \
#       -v parley-home:/var/lib/parley parley
#   docker exec parley parley status
#
# The entrypoint (deploy/docker/entrypoint.sh) runs 'parley init' when the
# home has no node key, then 'parley run' on TCP and QUIC port 4001; its
# PARLEY_* variables set bootstrap peers, the config and more. compose.yaml
# runs a three-node mesh on this image.

ARG GO_VERSION=1.26.8
ARG ALPINE_VERSION=3.22

FROM golang:${GO_VERSION}-alpine AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly
# The modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The build context has no .git, so the go command cannot stamp the commit:
# 'parley version' names PARLEY_REVISION instead.
ARG PARLEY_REVISION=
RUN go build -trimpath -buildvcs=false \
        -ldflags "-s -w -X main.stampedRevision=${PARLEY_REVISION}" \
        -o /out/parley ./cmd/parley \
    && /out/parley version

FROM alpine:${ALPINE_VERSION}
# /var/lib/parley is the home; /mesh is where compose.yaml's nodes share the
# bootstrap node's PeerID. Both belong to the parley user, and a new named
# volume mounted on either takes that owner.
RUN addgroup -S -g 10001 parley \
    && adduser -S -D -H -u 10001 -G parley -h /var/lib/parley -s /sbin/nologin parley \
    && install -d -o parley -g parley -m 0700 /var/lib/parley \
    && install -d -o parley -g parley -m 0755 /mesh
COPY --from=build /out/parley /usr/local/bin/parley
COPY deploy/docker/entrypoint.sh /usr/local/bin/parley-entrypoint
# The shell example agent, for configs that run it (exec: [quote.sh]).
COPY examples/shell/quote.sh /usr/local/bin/quote.sh
ENV PARLEY_HOME=/var/lib/parley
USER parley:parley
WORKDIR /var/lib/parley
VOLUME ["/var/lib/parley"]
EXPOSE 4001/tcp 4001/udp
# Healthy once the daemon's API answers (being connected to a peer is
# GET /v1/health, which a lone first node never is).
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=3 CMD ["parley", "status"]
ENTRYPOINT ["/usr/local/bin/parley-entrypoint"]
