//! Imports `evil:probe/dial`, an interface the host does not provide: it
//! must be refused when the pipeline is loaded, with the import named.

wit_bindgen::generate!({
    inline: r#"
        package evil:probe;

        interface dial {
            connect: func(host: string) -> bool;
        }

        world foreign {
            import dial;
            include cleanroom:plugin/check@0.1.3;
        }
    "#,
    path: "../../../wit",
    world: "evil:probe/foreign",
    generate_all,
});

struct ForeignImport;

impl Guest for ForeignImport {
    fn check(_: Invocation) -> Result<Vec<Finding>, String> {
        if evil::probe::dial::connect("attacker.example") {
            Err("dialled out".into())
        } else {
            Ok(Vec::new())
        }
    }
}

export!(ForeignImport);
