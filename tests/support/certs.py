"""Test certificates made with the openssl command line: a CA, and leaf certificates it signs
with subjectAltName IP:127.0.0.1 (plus DNS names if asked) for TLS servers and clients.

    ca = TestCA(tmp_path / "ca", "op25b test CA")
    leaf = ca.issue("op25b", dns=["op25b.test"])       # leaf.cert, leaf.key, ca.cert (paths)
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

OPENSSL = shutil.which("openssl")


@dataclasses.dataclass(frozen=True)
class Leaf:
    name: str
    cert: Path
    key: Path
    ca: Path  # the CA certificate that signed it

    def serial(self) -> str:
        out = subprocess.run(
            [OPENSSL, "x509", "-in", str(self.cert), "-noout", "-serial"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip().split("=", 1)[1].lower()


class TestCA:
    __test__ = False  # not a pytest class

    def __init__(self, folder: Path, name: str) -> None:
        if OPENSSL is None:
            raise FileNotFoundError("openssl not found")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cert = self.folder / "ca.pem"
        self.key = self.folder / "ca.key"
        self._run(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(self.key), "-out", str(self.cert), "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip

    def _run(self, *args: str) -> None:
        done = subprocess.run([OPENSSL, *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {done.stderr}")

    def issue(self, name: str, dns: list[str] | None = None, ip: str = "127.0.0.1", folder: Path | None = None) -> Leaf:
        """A leaf for `name` (its CN), usable by a TLS server and client alike."""
        out = Path(folder or self.folder)
        out.mkdir(parents=True, exist_ok=True)
        key, csr, cert, ext = (out / f"{name}.{suffix}" for suffix in ("key", "csr", "pem", "ext"))
        san = ",".join([f"IP:{ip}", *(f"DNS:{d}" for d in dns or [])])
        ext.write_text(
            f"subjectAltName={san}\nextendedKeyUsage=serverAuth,clientAuth\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=CA:FALSE\n"
        )
        self._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")  # fmt: skip
        self._run("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key), "-CAcreateserial",
                  "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
        key.chmod(0o600)
        return Leaf(name, cert, key, self.cert)
