//! Compiles the vendored ext_authz protos (`proto/`) into a file descriptor set for gRPC
//! server reflection. The message types themselves come from the `envoy-types` crate; this
//! only gives `grpcurl list/describe` the schema. Pure Rust (protox): no `protoc` needed.

use prost::Message;

fn main() {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["envoy/service/auth/v3/external_auth.proto"], ["proto"])
        .expect("vendored ext_authz protos compile");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("ext_authz_descriptor.bin"), descriptors.encode_to_vec())
        .expect("write descriptor set to OUT_DIR");
}
