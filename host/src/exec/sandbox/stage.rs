//! Where starting a confined program failed, as init or the program reports
//! it to the host.

/// Where starting the program failed, as init or the program tells the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub(super) enum Stage {
    UserNamespace = 1,
    Session,
    Cgroups,
    Limits,
    Mounts,
    WorkingDirectory,
    PrivateTmp,
    Network,
    Descriptors,
    StartProgram,
    Credentials,
    Exec,
}

impl Stage {
    /// What was being done, for the error.
    pub(super) fn describe(self) -> &'static str {
        match self {
            Stage::UserNamespace => "mapping the user namespace",
            Stage::Session => "starting a session",
            Stage::Cgroups => "joining its cgroups",
            Stage::Limits => "setting its resource limits",
            Stage::Mounts => "mounting its /proc",
            Stage::WorkingDirectory => "entering its working directory",
            Stage::PrivateTmp => "mounting its private /tmp",
            Stage::Network => "bringing up its loopback interface",
            Stage::Descriptors => "wiring its stdin, stdout and stderr",
            Stage::StartProgram => "starting the program's process",
            Stage::Credentials => "becoming the step user",
            Stage::Exec => "executing the program",
        }
    }

    /// The stage a report names.
    pub(super) fn from_raw(raw: i32) -> Option<Stage> {
        const ALL: [Stage; 12] = [
            Stage::UserNamespace,
            Stage::Session,
            Stage::Cgroups,
            Stage::Limits,
            Stage::Mounts,
            Stage::WorkingDirectory,
            Stage::PrivateTmp,
            Stage::Network,
            Stage::Descriptors,
            Stage::StartProgram,
            Stage::Credentials,
            Stage::Exec,
        ];
        ALL.into_iter().find(|s| *s as i32 == raw)
    }
}
