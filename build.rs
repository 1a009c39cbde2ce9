//! Compiles the remote-write protos in `proto/` with prost. protox parses them in pure Rust,
//! so building needs no system `protoc`.

fn main() {
    let files = [
        "proto/remote.proto",
        "proto/types.proto",
        "proto/io/prometheus/write/v2/types.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"]).expect("proto/ compiles");
    prost_build::Config::new()
        .compile_fds(descriptors)
        .expect("prost generates code");
}
