//! `opsbot policy check|explain`: validate a policy file, or show how it decides one request.
//!
//! Exit codes: 0 when the command did its job (for `explain`, whatever the decision), 2 when
//! the policy file has errors or the arguments are wrong.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use opsbot_policies::{Action, Policy, PolicyErrors, Request, Severity, Subject};

#[derive(clap::Subcommand)]
pub enum PolicyCmd {
    /// Validates a policy file: prints a one-line summary, or every error (exit 2).
    Check {
        /// The policy file (YAML, `version: 1`).
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
    },
    /// Shows the decision for one request and how each rule related to it.
    Explain(ExplainArgs),
}

#[derive(clap::Args)]
pub struct ExplainArgs {
    /// The policy file (YAML, `version: 1`).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// Who asks: the first is the user, any further ones are the user's groups
    /// (`slack-group:...`, `discord-role:...`).
    #[arg(long = "subject", value_name = "S", required = true)]
    pub subjects: Vec<Subject>,
    /// The channel the request was made in.
    #[arg(long, value_name = "C")]
    pub channel: Option<String>,
    /// The action, e.g. `scale`, `logs`, `incident.open`.
    #[arg(long, value_name = "A")]
    pub action: Action,
    /// The cluster the command acts on (as named in the configuration).
    #[arg(long, value_name = "C")]
    pub cluster: Option<String>,
    /// The namespace the command acts in.
    #[arg(long, value_name = "N")]
    pub namespace: Option<String>,
    /// `kind/name`, e.g. `deployment/api`.
    #[arg(long, value_name = "KIND/NAME", value_parser = parse_resource)]
    pub resource: Option<String>,
    /// The replicas asked for (a scale's target, an hpa change's highest new bound), for rules
    /// with `when: {replicas: …}`.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub replicas: Option<i64>,
    /// The log lines asked for (`logs --tail`), for rules with `when: {tail_lines: …}`.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub tail_lines: Option<i64>,
    /// P1 (worst) to P4.
    #[arg(long, value_name = "P1..P4")]
    pub severity: Option<Severity>,
    /// `json` for scripts: the decision and every rule's relation to the request.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

fn parse_resource(s: &str) -> Result<String, String> {
    match s.split_once('/') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(s.to_owned())
        }
        _ => Err(format!(
            "`{s}` is not KIND/NAME, e.g. deployment/api or statefulset/postgres-replica"
        )),
    }
}

const EXIT_ERRORS: u8 = 2;

fn print_errors(errors: &PolicyErrors) {
    let mut err = std::io::stderr().lock();
    for e in &errors.0 {
        let _ = writeln!(err, "{e}");
    }
    let n = errors.0.len();
    let _ = writeln!(err, "{n} error{}", if n == 1 { "" } else { "s" });
}

fn load(path: &Path) -> Result<Policy, ExitCode> {
    Policy::load(path).map_err(|errors| {
        print_errors(&errors);
        ExitCode::from(EXIT_ERRORS)
    })
}

/// Builds the request `explain` asks about: first subject is the user, the rest are groups.
pub fn request_from(args: &ExplainArgs) -> Option<Request> {
    let (user, groups) = args.subjects.split_first()?;
    Some(Request {
        user: user.clone(),
        groups: groups.to_vec(),
        groups_unknown: false,
        channel: args.channel.clone(),
        action: args.action,
        cluster: args.cluster.clone(),
        namespace: args.namespace.clone(),
        resource: args.resource.clone(),
        replicas: args.replicas,
        tail_lines: args.tail_lines,
        severity: args.severity,
    })
}

pub fn run(cmd: PolicyCmd) -> ExitCode {
    match cmd {
        PolicyCmd::Check { policy } => match load(&policy) {
            Ok(p) => {
                println!("{}", p.summary());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        PolicyCmd::Explain(args) => {
            let policy = match load(&args.policy) {
                Ok(p) => p,
                Err(code) => return code,
            };
            let Some(request) = request_from(&args) else {
                eprintln!("explain needs at least one --subject");
                return ExitCode::from(EXIT_ERRORS);
            };
            let ignored: Vec<&str> = request
                .groups
                .iter()
                .filter(|g| !g.is_group())
                .map(Subject::as_str)
                .collect();
            if !ignored.is_empty() {
                eprintln!(
                    "note: ignoring {} as groups: only slack-group: and discord-role: subjects count as groups",
                    ignored.join(", ")
                );
            }
            let eval = policy.evaluate(&request);
            match args.format {
                Format::Json => println!("{}", eval.to_json_string()),
                Format::Text => print!("{}", eval.to_text()),
            }
            // The process ends here, and the system takes its memory back at once: freeing a
            // large policy's many small allocations one by one would only delay the exit.
            std::mem::forget((policy, eval));
            ExitCode::SUCCESS
        }
    }
}
