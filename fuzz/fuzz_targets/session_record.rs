//! Fuzzes the session record codec with arbitrary bytes as an opened
//! record (the binary layout or the JSON of earlier versions). Sealing
//! means only the gateway writes these bytes, but nothing may panic on any
//! input; and a record that opens must encode and open to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::session::codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = codec::decode(data) {
        let again = codec::encode(&record).expect("an opened record encodes");
        assert_eq!(codec::decode(&again).expect("and opens again"), record);
    }
});
