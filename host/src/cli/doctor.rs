//! `pulsehost doctor`: what this machine gives native steps, and what each
//! missing protection would take. It probes exactly as `serve` does (same
//! variables), without creating the step user.

use crate::config::Config;
use crate::exec::sandbox::plan::ALL;
use crate::exec::sandbox::{user, ProbeOptions, Sandbox};

use super::output::table;

/// Prints the report; fails only when the configuration is unusable.
pub fn doctor() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let settings = &config.sandbox;
    let sandbox = Sandbox::probe(&ProbeOptions {
        run_as: settings.run_as.clone(),
        policy: settings.policy,
        off: settings.off.clone(),
        host_id: format!("doctor-{}", std::process::id()),
        create_user: false,
    })
    .map_err(anyhow::Error::msg)?;
    print!("{}", report(&sandbox, &config));
    Ok(())
}

fn report(sandbox: &Sandbox, config: &Config) -> String {
    let me = nix::unistd::geteuid();
    let root = me.is_root();
    let runs_as = match (&sandbox.run_as, root) {
        (Some(u), _) => format!("{} (uid {})", u.name, u.uid),
        (None, true) => format!("{} (created when the host starts)", user::DEFAULT_USER),
        (None, false) => format!("the host's own user (uid {me})"),
    };
    let listed = |bases: Vec<&std::path::Path>| {
        let names: Vec<String> = bases.iter().map(|b| b.display().to_string()).collect();
        (!names.is_empty()).then(|| names.join(", "))
    };
    let bases = listed(sandbox.cgroup_bases()).unwrap_or_else(|| "none".into());
    let reused = listed(sandbox.cell_bases())
        .map(|cells| format!("{cells} (cells reused process after process; `pids` is new for each)"))
        .unwrap_or_else(|| "none (every process gets new cgroups)".into());
    let mut out = format!(
        "host runs as:   uid {me}{}\nsteps run as:   {runs_as}\npolicy:         {}\ncgroups under:  {bases}\nreused:         {reused}\nstep limits:    {}\n\n",
        if root { " (root)" } else { "" },
        match sandbox.policy {
            crate::exec::sandbox::Policy::BestEffort => "best-effort (a missing protection is recorded as a `degraded` event)",
            crate::exec::sandbox::Policy::Strict => "strict (a step that asks for a missing protection is refused)",
        },
        limits(&config.sandbox.limits),
    );
    let rows = ALL.iter().map(|p| {
        let missing = sandbox.offers.get(p).cloned().flatten();
        vec![
            p.as_str().to_string(),
            if missing.is_some() { "no" } else { "yes" }.to_string(),
            missing.unwrap_or_default(),
        ]
    });
    out.push_str(&table(&["PROTECTION", "AVAILABLE", "WHAT IT WOULD TAKE"], rows));
    out
}

fn limits(l: &crate::exec::sandbox::Limits) -> String {
    let some = |v: Option<u64>| v.map_or("none".to_string(), |n| n.to_string());
    format!(
        "memory {} bytes, cpu {} millicores, processes {}, open files {}, file size {} bytes, network {}, /tmp {}",
        some(l.memory_bytes),
        some(l.cpu_millicores.map(u64::from)),
        some(l.processes.map(u64::from)),
        some(l.open_files),
        some(l.file_size_bytes),
        if l.no_network { "none" } else { "the host's" },
        if l.private_tmp { "private" } else { "shared" },
    )
}
