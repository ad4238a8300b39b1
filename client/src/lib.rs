//! kmem-client: the wire types of kmemd (`kmem.v1`) and a typed client over them.
#![forbid(unsafe_code)]

/// Generated prost messages and tonic stubs of `proto/kmem/v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("kmem.v1");

    /// The encoded `FileDescriptorSet` of every kmemd proto file (and its imports),
    /// for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/kmem_descriptor.bin"));
}
