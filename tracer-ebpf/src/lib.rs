//! Empty on purpose: the programs live in the `tracer` binary target (`src/main.rs`), built for
//! `bpfel-unknown-none` by `tracer`'s build script. This library target only lets `tracer`
//! declare a build dependency so that cargo rebuilds the programs when they change.
#![no_std]
