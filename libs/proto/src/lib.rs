//! Generated wire types for Aloft's API and event envelope (from `proto/aloft/v1`).
//!
//! Only generated code lives here: conversion to and from the domain types of `aloft-core`, and the
//! validation that goes with it, happen at the service boundaries.

pub mod v1 {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("aloft.v1");
}
