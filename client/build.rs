//! Compiles `proto/kmem/v1/*.proto` with protox (no system protoc) into prost types,
//! tonic client and server stubs, and the encoded descriptor set the server's
//! reflection service publishes.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let files = ["common", "allocator", "cgroup", "introspection"]
        .map(|f| root.join(format!("kmem/v1/{f}.proto")));
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("google/rpc/status.proto").display()
    );
    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("kmem_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .extern_path(".google.rpc", "::tonic_types::pb")
        .codec_path("crate::codec::SliceCodec")
        // Batch and Session decode thousands of these: boxing the oneof's requests and
        // the result's allocation keeps the repeated-field moves small.
        .boxed(".kmem.v1.Operation")
        .boxed(".kmem.v1.OperationResult.allocation")
        .compile_fds(fds)?;
    Ok(())
}
