# Sourced by the setup scripts: install Debian packages quietly.
#
# apt_install PKG...   installs what is given, as root or through sudo, with
#                      no prompt and without debconf's "delaying package
#                      configuration, since apt-utils is not installed" line,
#                      which is noise on minimal images (the configuration is
#                      not delayed in any way that matters here). Real errors
#                      still reach stderr and fail the caller.

apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    {
        $sudo apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
    } 2> >(grep -v -e '^debconf: delaying package configuration' >&2)
}
