//! Replays the committed corpora of the host's fuzz targets (`fuzz/corpus/convert`,
//! `fuzz/corpus/delivery`) through the same checks the fuzzers run, so CI covers every input they
//! found interesting without nightly.

use crate::convert::types_endpoint;
use crate::harness::{wasm, workspace};

#[test]
fn convert_corpus_holds() {
    let dir = workspace().join("fuzz/corpus/convert");
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if let Err(violation) = fjord_host::fuzzing::check_conversion(types_endpoint(), &data) {
            panic!("{}: {violation}", path.display());
        }
        inputs += 1;
    }
    // The corpus is what the fuzzer kept after minimizing; an empty one means a broken path.
    assert!(inputs > 100, "only {inputs} inputs in {}", dir.display());
}

/// The delivery fuzzer's corpus, with the same counting allocator (installed in `main.rs`), so
/// the tree bound is checked too.
#[test]
fn delivery_corpus_holds() {
    let dispatcher = fjord_host::fuzzing::delivery_dispatcher(&wasm("types")).unwrap();
    let dir = workspace().join("fuzz/corpus/delivery");
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if let Err(violation) = fjord_host::fuzzing::check_delivery(&dispatcher, &data) {
            panic!("{}: {violation}", path.display());
        }
        inputs += 1;
    }
    assert!(inputs > 50, "only {inputs} inputs in {}", dir.display());
}
