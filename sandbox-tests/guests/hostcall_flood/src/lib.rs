//! Hands the host 64 MiB in one call: a single `wasi:filesystem` `write` of a
//! 64 MiB buffer into its write mount `/out`. The cap on bytes per host call
//! must stop it before the host copies that much.

wit_bindgen::generate!({ path: "../../../wit", world: "stage" });

use wasip2::filesystem::preopens::get_directories;
use wasip2::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};

struct HostcallFlood;

impl Guest for HostcallFlood {
    fn run(_: Invocation) -> Result<String, String> {
        let (out, _) = get_directories().into_iter().find(|(_, path)| path == "/out").ok_or("no `/out` mount")?;
        let file = out
            .open_at(PathFlags::empty(), "flood.bin", OpenFlags::CREATE, DescriptorFlags::WRITE)
            .map_err(|e| format!("open: {e:?}"))?;
        let big = vec![b'x'; 64 << 20];
        let written = file.write(&big, 0).map_err(|e| format!("write: {e:?}"))?;
        Err(format!("the host took {written} bytes in one call"))
    }
}

export!(HostcallFlood);
