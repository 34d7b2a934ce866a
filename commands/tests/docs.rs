//! The committed command reference (`docs/commands.md`) is generated from the declarations.
//! Regenerate it with `UPDATE_DOCS=1 cargo test -p opsbot-commands --test docs`.

use std::path::PathBuf;

#[test]
fn committed_command_reference_is_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/commands.md");
    let generated = opsbot_commands::reference_markdown();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::create_dir_all(path.parent().expect("docs/ has a parent")).expect("create docs/");
        std::fs::write(&path, &generated).expect("write docs/commands.md");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/commands.md is stale (or missing): the command declarations in \
         commands/src/spec.rs changed. Regenerate it with\n\n    \
         UPDATE_DOCS=1 cargo test -p opsbot-commands --test docs\n\nand commit the result."
    );
}

#[test]
fn reference_covers_every_command() {
    let md = opsbot_commands::reference_markdown();
    for c in opsbot_commands::COMMANDS {
        assert!(md.contains(&format!("\n## {}\n", c.name)), "{}", c.name);
        assert!(md.contains(&c.usage()), "{}", c.name);
        for e in c.examples {
            assert!(md.contains(e.text), "{}", e.text);
        }
    }
}
