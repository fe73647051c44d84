#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tower_ws_fuzz::decode_server(data));
