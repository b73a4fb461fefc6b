# syntax=docker/dockerfile:1
# Build a static vmcp binary, then run it as a non-root user on a minimal
# base. Stdio backends need their own runtimes (node, python, ...): build an
# image FROM this one that adds them, or use HTTP backends.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/vmcp ./cmd/vmcp

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/vmcp /usr/local/bin/vmcp
USER nonroot:nonroot
EXPOSE 4483
# Mount the config at /etc/vmcp/vmcp.yaml. In a container, set
# server.host to 0.0.0.0 and incomingAuth to oidc (or, knowingly,
# allowAnonymousNetwork: true).
ENTRYPOINT ["/usr/local/bin/vmcp"]
CMD ["serve", "--config", "/etc/vmcp/vmcp.yaml"]
