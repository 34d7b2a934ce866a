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

/// README.md carries the command table between these markers.
const BEGIN: &str = "<!-- BEGIN GENERATED: commands -->\n";
const END: &str = "<!-- END GENERATED: commands -->";

#[test]
fn readme_command_table_is_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (Some(start), Some(end)) = (readme.find(BEGIN), readme.find(END)) else {
        panic!("README.md lacks the markers {BEGIN:?} … {END:?}");
    };
    let current = &readme[start + BEGIN.len()..end];
    let generated = opsbot_commands::help::readme_summary_markdown();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let updated = format!("{}{BEGIN}{generated}{}", &readme[..start], &readme[end..]);
        std::fs::write(&path, updated).expect("write README.md");
        return;
    }
    assert!(
        current == generated,
        "the command table in README.md is stale. Regenerate it with\n\n    \
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
