//! Tries to open a TCP connection to each configured address (`127.0.0.1:PORT`). Reports every attempt as an error finding, ruled `succeeded` when a connection opens, `denied` otherwise.

wit_bindgen::generate!({ path: "../../../wit", world: "check" });

use probe_common::targets;

probe_common::define_verdict!();

fn connect(addr: &str) -> Result<String, std::io::Error> {
    let addr: std::net::SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))?;
    Ok("connected".into())
}

struct SocketProbe;

impl Guest for SocketProbe {
    fn check(invocation: Invocation) -> Result<Vec<Finding>, String> {
        let targets = targets(&invocation.config)?;
        Ok(targets.iter().map(|a| verdict(a, "connect", connect(a))).collect())
    }
}

export!(SocketProbe);
