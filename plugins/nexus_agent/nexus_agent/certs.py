"""The cluster's certificate authority and certificates (``cryptography``), and Dask ``Security``.

``nexus agent init`` makes a CA (``ca.pem``, ``ca-key.pem``) and a certificate for this
machine (``NAME.pem``, ``NAME-key.pem``) in the agent folder (see :mod:`nexus_agent.paths`);
``nexus agent cert NAME`` issues one more for another machine. Every certificate is good
for both ends of a connection (server and client authentication): Dask then requires and
verifies the peer's certificate on every connection, so mutual TLS is the only way in.
Keys are ECDSA P-256; private key files are written with mode 0600.
"""

from __future__ import annotations

import datetime
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nexus_agent.paths import config_dir

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
#: How long issued certificates are valid (the CA: ten years).
CERT_DAYS = 825
CA_DAYS = 3650


class CertError(Exception):
    """A certificate problem the user can fix: ``hint`` says how."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class CertFiles:
    """The files one machine uses to join the cluster: the CA and its own certificate and key."""

    ca: str
    cert: str
    key: str

    def security(self) -> Any:
        """A Dask ``Security`` with mutual TLS for every role (scheduler, worker, client)."""
        from distributed import Security

        return Security(
            tls_ca_file=self.ca,
            tls_client_cert=self.cert,
            tls_client_key=self.key,
            tls_scheduler_cert=self.cert,
            tls_scheduler_key=self.key,
            tls_worker_cert=self.cert,
            tls_worker_key=self.key,
            require_encryption=True,
        )


#: Names whose certificate files would be the CA's own (``ca.pem``, ``ca-key.pem``): issuing
#: one overwrote the cluster's CA, and ``ca-key`` its private key, for good.
RESERVED = ("ca", "ca-key")


def check_name(name: str) -> str:
    """``name`` when it is a valid agent or certificate name; CertError otherwise."""
    if not NAME_RE.match(name):
        raise CertError(
            f"invalid name {name!r}",
            "use letters, digits, '.', '_' and '-' (at most 63 characters), starting with a letter or digit",
        )
    if name in RESERVED:
        raise CertError(
            f"the name {name!r} is taken by the cluster CA's own files (ca.pem, ca-key.pem)",
            f"pick another name for this machine, e.g. {name}-1 (--name)",
        )
    return name


def _write(path: str, data: bytes, private: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def init(folder: str | None = None, force: bool = False, name: str | None = None) -> tuple[str, CertFiles]:
    """Create the CA and this machine's certificate in ``folder``; return (folder, its files).

    An existing CA is kept (CertError unless ``force``): replacing it locks every agent out.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = folder or config_dir()
    name = check_name(name or default_name())  # before the CA is written: not a CA without its machine
    ca_path = os.path.join(folder, "ca.pem")
    if os.path.exists(ca_path) and not force:
        raise CertError(
            f"a cluster CA already exists in {folder}",
            "use it as it is (`nexus agent cert NAME` issues more certificates), or pass --force to replace "
            "it (every agent then needs a new certificate)",
        )
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)  # a folder that was there (0777, say) holds the CA's key from now on
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nexus cluster CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write(
        os.path.join(folder, "ca-key.pem"),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        private=True,
    )
    _write(ca_path, cert.public_bytes(serialization.Encoding.PEM), private=False)
    return folder, issue(name, folder)


def default_name() -> str:
    """This machine's short host name, made a valid certificate name."""
    raw = socket.gethostname().split(".")[0] or "agent"
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", raw).strip("-._") or "agent"
    if cleaned in RESERVED:  # a machine called "ca" must not take the CA's files
        cleaned += "-1"
    return cleaned[:63]


def issue(name: str, folder: str | None = None) -> CertFiles:
    """Issue a certificate for ``name`` signed by the cluster CA; return its files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    check_name(name)
    folder = folder or config_dir()
    ca_cert_path = os.path.join(folder, "ca.pem")
    ca_key_path = os.path.join(folder, "ca-key.pem")
    if not os.path.exists(ca_key_path):
        raise CertError(
            f"no cluster CA in {folder}",
            "run `nexus agent init` on the coordinator's machine first, and issue certificates there",
        )
    with open(ca_key_path, "rb") as fh:
        ca_key = serialization.load_pem_private_key(fh.read(), password=None)
    with open(ca_cert_path, "rb") as fh:
        ca_cert = x509.load_pem_x509_certificate(fh.read())
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{ca_key_path} is not an EC key made by `nexus agent init`", "run `nexus agent init --force`")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name), x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = CertFiles(ca_cert_path, os.path.join(folder, f"{name}.pem"), os.path.join(folder, f"{name}-key.pem"))
    _write(
        files.key,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        private=True,
    )
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM), private=False)
    return files


def check_files(files: CertFiles) -> None:
    """CertError naming the file when this machine's certificate cannot work: unreadable, not
    yet or no longer valid, not issued by the CA in ``ca.pem``, or its key is another's. Said
    before anything connects: the coordinator's TLS alert named none of these ("expired"
    came out as "not issued by the cluster's CA", a wrong key as "the cluster refuses")."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    def load(path: str, what: str) -> Any:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            return (
                serialization.load_pem_private_key(data, None)
                if what == "key"
                else x509.load_pem_x509_certificate(data)
            )
        except (OSError, ValueError, TypeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc).split("\n")[0]
            hint = "copy it again from the first machine (`nexus agent cert NAME` there)"
            raise CertError(f"cannot read the {what} {path}: {reason}", hint) from None

    ca, cert, key = load(files.ca, "CA certificate"), load(files.cert, "certificate"), load(files.key, "key")
    now = _now()
    if cert.not_valid_after_utc < now:
        raise CertError(
            f"this machine's certificate {files.cert} expired on {cert.not_valid_after_utc:%Y-%m-%d}",
            "issue a new one on the first machine (`nexus agent cert NAME`) and copy it here",
        )
    if cert.not_valid_before_utc > now:
        raise CertError(
            f"this machine's certificate {files.cert} is valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
            "check this machine's clock",
        )
    try:
        ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    except (InvalidSignature, TypeError, ValueError, AttributeError):
        raise CertError(
            f"this machine's certificate {files.cert} was not issued by the CA in {files.ca} (another cluster's?)",
            "copy ca.pem, NAME.pem and NAME-key.pem from the same first machine",
        ) from None
    if key.public_key().public_numbers() != cert.public_key().public_numbers():
        raise CertError(
            f"the key {files.key} does not belong to the certificate {files.cert}",
            "copy both from the same `nexus agent cert NAME`",
        )


def find(name: str | None = None, folder: str | None = None, exact: bool = False) -> CertFiles:
    """The certificate files to connect with: ``name``'s, else this machine's, else the only one
    (``exact``: ``name``'s or none, for a certificate the user named).

    ``NEXUS_AGENT_CERT`` / ``NEXUS_AGENT_KEY`` / ``NEXUS_AGENT_CA`` point at files elsewhere.
    """
    folder = folder or config_dir()
    env_cert, env_key = os.environ.get("NEXUS_AGENT_CERT"), os.environ.get("NEXUS_AGENT_KEY")
    ca = os.environ.get("NEXUS_AGENT_CA") or os.path.join(folder, "ca.pem")
    if env_cert and env_key:
        return CertFiles(ca, env_cert, env_key)
    if not os.path.exists(ca):
        raise CertError(
            f"no cluster certificates in {folder}",
            "run `nexus agent init` (first machine), or copy ca.pem, NAME.pem and NAME-key.pem from "
            "`nexus agent cert NAME` on the first machine into that folder",
        )
    candidates = [name] if name else []
    if not (exact and name):
        candidates.append(default_name())
    for candidate in candidates:
        cert = os.path.join(folder, f"{candidate}.pem")
        key = os.path.join(folder, f"{candidate}-key.pem")
        if os.path.exists(cert) and os.path.exists(key):
            return CertFiles(ca, cert, key)
    owned = sorted(f[: -len("-key.pem")] for f in os.listdir(folder) if f.endswith("-key.pem") and f != "ca-key.pem")
    if len(owned) >= 1 and not name:
        return CertFiles(ca, os.path.join(folder, f"{owned[0]}.pem"), os.path.join(folder, f"{owned[0]}-key.pem"))
    there = f" (there: {', '.join(owned)})" if exact and owned else ""
    raise CertError(
        f"no certificate for {name or default_name()!r} in {folder}{there}",
        f"issue one on the first machine with `nexus agent cert {name or default_name()}` and copy it here",
    )


def common_name(files: CertFiles) -> str:
    """The identity (common name) of ``files``' certificate: what agents verify and audit."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    with open(files.cert, "rb") as fh:
        cert = x509.load_pem_x509_certificate(fh.read())
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def sign_identity(files: CertFiles, payload: bytes) -> dict[str, str]:
    """Proof of who sends ``payload``: the sender's certificate and its key's signature over it."""
    return signer(files)(payload)


def signer(files: CertFiles) -> Callable[[bytes], dict[str, str]]:
    """:func:`sign_identity` with ``files`` read once (the executor signs every command)."""
    import base64

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    with open(files.key, "rb") as raw:
        key = serialization.load_pem_private_key(raw.read(), password=None)
    with open(files.cert, encoding="ascii") as text:
        cert = text.read()
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{files.key} is not an EC key made by `nexus agent cert`", "issue the certificate again")
    ec_key = key

    def sign(payload: bytes) -> dict[str, str]:
        signature = ec_key.sign(payload, ec.ECDSA(hashes.SHA256()))
        return {"cert": cert, "sig": base64.b64encode(signature).decode("ascii")}

    return sign


def verify_identity(stamp: Any, payload: bytes, ca_path: str) -> str:
    """The common name of a :func:`sign_identity` stamp whose certificate the cluster CA issued,
    is valid now, and whose key signed ``payload``; :class:`CertError` otherwise."""
    import base64

    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    if not isinstance(stamp, dict) or not stamp.get("cert") or not stamp.get("sig"):
        raise CertError("the work carries no signed client identity", "upgrade nexus-agent on the coordinator")
    try:
        cert = x509.load_pem_x509_certificate(str(stamp["cert"]).encode("ascii"))
        with open(ca_path, "rb") as fh:
            ca = x509.load_pem_x509_certificate(fh.read())
        ca_key = ca.public_key()
        key = cert.public_key()
        if not isinstance(ca_key, ec.EllipticCurvePublicKey) or not isinstance(key, ec.EllipticCurvePublicKey):
            raise CertError("the client certificate or the CA is not an EC certificate of this cluster")
        if cert.issuer != ca.subject:
            raise CertError("the client certificate was not issued by this cluster's CA")
        ca_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
        now = _now()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise CertError("the client certificate is not valid now")
        key.verify(base64.b64decode(str(stamp["sig"])), payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, OSError) as exc:
        raise CertError(f"the client identity does not verify ({type(exc).__name__})") from None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""
