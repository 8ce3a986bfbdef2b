//! Unified diffs (the `apply-patch` plugin's parser and applier): must never
//! panic, whatever the patch and the file it applies to. Input: the patch,
//! a NUL byte, then the original file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let patch = &data[..split];
    let original = data.get(split + 1..).unwrap_or_default().to_vec();
    if let Ok(files) = apply_patch::diff::parse(patch) {
        let mut read = |_: &str| -> Result<Option<Vec<u8>>, String> { Ok(Some(original.clone())) };
        let _ = apply_patch::apply::plan(&files, 1, &mut read);
        let mut absent = |_: &str| -> Result<Option<Vec<u8>>, String> { Ok(None) };
        let _ = apply_patch::apply::plan(&files, 0, &mut absent);
    }
});
