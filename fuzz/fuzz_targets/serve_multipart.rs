//! The body of a `/predict/batch` request (multipart/form-data), parsed by `orchard serve`'s own code
//! (crates/orchard-serve/src/request.rs). The input's first line is the Content-Type header, the rest the
//! body. The body is in memory, so the parser's future completes without waiting: it is polled to the end.
#![no_main]

use std::future::Future;
use std::task::{Context, Poll, Waker};

use axum::body::Bytes;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../crates/orchard-serve/src/request.rs"]
mod request;

fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("a body held in memory never finished parsing");
}

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (Some(&data[..i]), &data[i + 1..]),
        None => (None, data),
    };
    if let Ok(parts) = block_on(request::multipart_images(content_type, Bytes::copy_from_slice(body))) {
        assert!(!parts.is_empty());
        assert!(parts.iter().map(|p| p.data.len()).sum::<usize>() <= body.len());
    }
});
