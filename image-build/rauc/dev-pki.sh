#!/usr/bin/env bash
# A development PKI for signing update bundles, for tests and for trying updates on the twin:
# a CA (its certificate is the image's RAUC keyring) and a signing key with a certificate it
# issued. Made once into DIR (the Makefile uses the cache, never the repository) and reused.
# A real device needs a PKI of its own: see the README's "Updates" for how to make and keep it.
#
# Usage: dev-pki.sh DIR [NAME]   -> DIR/ca.cert.pem DIR/signing.key.pem DIR/signing.cert.pem
# The layout follows RAUC's documentation on PKI: a CA over a signing certificate. The signing
# certificate has no extendedKeyUsage: RAUC checks bundles for the S/MIME signing purpose by
# default, which a codeSigning-only certificate fails ("unsuitable certificate purpose").
set -euo pipefail
dir=$1 name=${2:-wick development}
command -v openssl >/dev/null || { echo "dev-pki.sh: openssl is missing (apt-get install openssl)" >&2; exit 1; }
if [ -f "$dir/ca.cert.pem" ] && [ -f "$dir/signing.key.pem" ] && [ -f "$dir/signing.cert.pem" ]; then
  exit 0
fi
mkdir -p "$dir"
work=$(mktemp -d "$dir/.pki.XXXXXX")
trap 'rm -rf "$work"' EXIT
cat > "$work/ext.cnf" <<'CNF'
[signing]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
# Twenty years: a device in a drawer must still take updates signed today.
days=7300
openssl req -x509 -newkey rsa:3072 -nodes -keyout "$work/ca.key.pem" -out "$work/ca.cert.pem" \
  -subj "/O=wick/CN=$name CA" -days $days -addext "basicConstraints=critical,CA:true" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey rsa:3072 -nodes -keyout "$work/signing.key.pem" -out "$work/signing.csr" \
  -subj "/O=wick/CN=$name bundle signing" 2>/dev/null
openssl x509 -req -in "$work/signing.csr" -CA "$work/ca.cert.pem" -CAkey "$work/ca.key.pem" -CAcreateserial \
  -out "$work/signing.cert.pem" -days $days -extfile "$work/ext.cnf" -extensions signing 2>/dev/null
openssl verify -CAfile "$work/ca.cert.pem" "$work/signing.cert.pem" >/dev/null
chmod 600 "$work/ca.key.pem" "$work/signing.key.pem"
mv "$work/ca.key.pem" "$work/ca.cert.pem" "$work/signing.key.pem" "$work/signing.cert.pem" "$dir/"
echo "dev-pki.sh: made $dir (CA and signing key \"$name\"; for development only)"
