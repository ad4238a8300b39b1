//! kmem-client: the wire types of kmemd (`kmem.v1`) and a typed async client.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kmem_client::Error> {
//! use kmem_client::{Client, Opts};
//! let c = Client::connect("http://127.0.0.1:50051").await?;
//! let a = c.kmalloc(96, &Opts::gfp("GFP_KERNEL|__GFP_ZERO")).await?;
//! assert_eq!(a.cache, "kmalloc-96");
//! c.kfree(a.addr).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod client;
pub mod codec;
mod error;
mod session;

pub use client::{Client, ClientBuilder, Opts};
pub use error::Error;
pub use session::Session;

/// Generated prost messages and tonic stubs of `proto/kmem/v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("kmem.v1");

    /// The encoded `FileDescriptorSet` of every kmemd proto file (and its imports),
    /// for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/kmem_descriptor.bin"));
}

/// The README's example compiles.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
