#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tower_ws_fuzz::deflate_inflate(data));
