# A Prometheus image for deploy/containers.sh, built without a registry: FROM scratch with the
# Prometheus 3.x binary from Debian's package (unpacked by tests/peers/install.sh), the shared
# libraries `ldd` lists for it (glibc only: Debian builds it with cgo), an /etc/passwd naming
# nobody (65534) and an empty /prometheus owned by it, as the upstream image has. The context is
# a directory deploy/containers.sh lays out (rootfs/ and data/). Test use only: deploy/ uses the
# upstream quay.io/prometheus/prometheus image.
FROM scratch
COPY rootfs/ /
COPY --chown=65534:65534 data/ /prometheus/
USER 65534:65534
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
