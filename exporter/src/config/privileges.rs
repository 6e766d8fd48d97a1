//! `--capabilities.keep`: what `serve` keeps of its capabilities after attaching.

use crate::privileges::KeepCapability;

/// The `--capabilities.keep` flag (flattened into `badfd serve`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct PrivilegeArgs {
    /// Capabilities to keep after attaching, besides what reading the BPF maps
    /// needs on this kernel; comma separated, `CAP_` prefix and case optional.
    /// E.g. `sys_ptrace` resolves relative paths through /proc/<pid>/cwd of other
    /// users' and privileged processes; `net_bind_service` for a port below 1024
    /// bound after the drop. `all` drops nothing.
    #[arg(
        long = "capabilities.keep",
        env = "BADFD_CAPABILITIES_KEEP",
        value_delimiter = ',',
        value_name = "CAP,..."
    )]
    pub capabilities_keep: Vec<KeepCapability>,
}

#[cfg(test)]
mod tests {
    use caps::Capability;
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        privileges: PrivilegeArgs,
    }

    #[test]
    fn keep_flag_takes_names_in_any_form() {
        let cli = Cli::try_parse_from([
            "badfd",
            "--capabilities.keep",
            "sys_ptrace,CAP_NET_BIND_SERVICE,Cap_Dac_Read_Search",
        ])
        .unwrap();
        assert_eq!(
            cli.privileges.capabilities_keep,
            vec![
                KeepCapability::One(Capability::CAP_SYS_PTRACE),
                KeepCapability::One(Capability::CAP_NET_BIND_SERVICE),
                KeepCapability::One(Capability::CAP_DAC_READ_SEARCH),
            ]
        );
        let cli = Cli::try_parse_from(["badfd", "--capabilities.keep=all"]).unwrap();
        assert_eq!(cli.privileges.capabilities_keep, vec![KeepCapability::All]);
        let cli = Cli::try_parse_from(["badfd"]).unwrap();
        assert!(cli.privileges.capabilities_keep.is_empty());
    }

    #[test]
    fn keep_flag_rejects_unknown_names_in_one_line() {
        let error = Cli::try_parse_from(["badfd", "--capabilities.keep", "sys_ptrace,cap_fly"])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("unknown capability \"cap_fly\""), "{error}");
    }
}
