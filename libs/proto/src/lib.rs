//! Aloft's wire types, generated from `proto/aloft/v1` (the API and the event envelope), and the one place
//! where they are converted to and from the domain types of `aloft-core` (`convert`): every service uses
//! these `From`/`TryFrom` impls instead of copies of its own, and a wire value that does not make a valid
//! domain value is refused with an error naming the field.

pub mod bearer;
pub mod client_tls;
pub mod convert;
pub mod status;

pub mod v1 {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("aloft.v1");
    include!(concat!(env!("OUT_DIR"), "/aloft.v1.serde.rs"));
}

/// The encoded `FileDescriptorSet` of every Aloft proto: what the REST API's OpenAPI document is made from.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/aloft_descriptor.bin"));
