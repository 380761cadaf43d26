//! Replays the envelope fuzzer's committed corpus (`fuzz/corpus/envelope`) through the same check
//! the fuzzer runs, so CI covers every input it found interesting without nightly or cargo-fuzz.

use std::path::Path;

#[test]
fn envelope_corpus_holds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/envelope");
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if let Err(violation) = fjord_oslo::fuzzing::check_envelope(&data) {
            panic!("{}: {violation}", path.display());
        }
        inputs += 1;
    }
    // The corpus is what the fuzzer kept after minimizing; an empty one means a broken path.
    assert!(inputs > 100, "only {inputs} inputs in {}", dir.display());
}
