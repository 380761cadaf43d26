//! Replays the JSON-to-WIT fuzzer's committed corpus (`fuzz/corpus/convert`) through the same
//! check the fuzzer runs, so CI covers every input it found interesting without nightly.

use crate::convert::types_endpoint;
use crate::harness::workspace;

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
