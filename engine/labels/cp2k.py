"""``reference: {kind: cp2k}``: DFT through CP2K's shell (ASE's CP2K calculator).

The CP2K input is generated entirely by :func:`cp2k_input` (ASE only adds coordinates, cell,
project name, stress switch). CP2K 2023.1 only *warns* when the SCF does not converge (later
versions abort), so the calculator reads its output for that warning; a crashed shell is killed
and restarted at the next calculation. The calculator raises ReferenceFailure itself, so MD
driving it sees failures too. This subclasses ASE's CP2K and uses its internals (``_shell``,
``_force_env_id``; ASE 3.29). CP2K's version (an external program, so not among the Python
packages a record lists) comes from its ``--version`` banner.
"""

from __future__ import annotations

import os
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

from ilcampaign.campaign.spec import CP2K
from ilcampaign.engine.labels.method import LabelMethod, ReferenceFailure, register_method


@register_method
class CP2KMethod(LabelMethod):
    kind = "cp2k"
    program = "CP2K"
    url = "https://www.cp2k.org"

    @staticmethod
    def calculator(reference: CP2K, charge: int, workdir: Path) -> Any:
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        # exec: the shell's pid is CP2K's, so killing it after a failure kills CP2K itself
        command = f"cd {shlex.quote(str(workdir))} && exec env OMP_NUM_THREADS={reference.threads} {reference.command}"
        return _cp2k_class()(reference, charge, command=command, label=str(workdir / "cp2k"))

    @staticmethod
    def version(reference: CP2K) -> str | None:
        return cp2k_version(reference.command)

    @staticmethod
    def level(reference: CP2K) -> str:
        return reference.functional


@cache
def cp2k_version(command: str) -> str | None:
    """The version of the CP2K that ``command`` (as a reference's ``command`` runs it) reports with
    ``--version``; None if it cannot say. Cached per command: the banner costs a process start."""
    import subprocess

    try:
        result = subprocess.run(f"exec env OMP_NUM_THREADS=1 {command} --version", shell=True, check=False,
                                capture_output=True, stdin=subprocess.DEVNULL, text=True, errors="replace", timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_cp2k_version(result.stdout)


def parse_cp2k_version(banner: str) -> str | None:
    """The version in CP2K's ``--version`` banner (its line `` CP2K version 2023.1``), or None."""
    match = re.search(r"^\s*CP2K version (\S+)", banner, re.MULTILINE)
    return match.group(1) if match else None


def cp2k_input(reference: CP2K, symbols: set[str], charge: int) -> str:
    """The CP2K FORCE_EVAL input for ``reference`` (one KIND per element in ``symbols``), with
    ``reference.extra_input`` merged in; cutoffs are written in Ry, R_CUTOFF in Angstrom."""
    from ase.calculators.cp2k import parse_input
    from ase.units import Rydberg

    scf, data = reference.scf, _data_dir()
    if reference.functional.upper() == "B97-3C":  # CP2K 2023.1 aborts without SCALE_X: "Unsupported scaling factors"
        becke97 = "&BECKE97\nPARAMETRIZATION B97-3C\nSCALE_X 1.0\nSCALE_C 1.0\n&END BECKE97"
        xc = f"&XC_FUNCTIONAL\n{becke97}\n&END XC_FUNCTIONAL"
    else:
        xc = f"&XC_FUNCTIONAL {reference.functional}\n&END XC_FUNCTIONAL"
    if reference.d3 is not None:
        d3 = reference.d3
        xc += f"""
&VDW_POTENTIAL
POTENTIAL_TYPE PAIR_POTENTIAL
&PAIR_POTENTIAL
TYPE DFTD3(BJ)
PARAMETER_FILE_NAME {d3.parameter_file}
REFERENCE_FUNCTIONAL {d3.reference_functional}
R_CUTOFF [angstrom] {d3.cutoff:.10g}
CALCULATE_C9_TERM {_logical(d3.three_body)}
SHORT_RANGE_CORRECTION {_logical(d3.short_range_correction)}
&END PAIR_POTENTIAL
&END VDW_POTENTIAL"""
    kinds = "\n".join(
        f"&KIND {element}\n"
        f"BASIS_SET {_resolve(data / reference.basis_set_file, element, reference.basis_set)}\n"
        f"POTENTIAL {_resolve(data / reference.potential_file, element, reference.pseudopotential)}\n"
        "&END KIND"
        for element in sorted(symbols)
    )
    text = f"""&FORCE_EVAL
METHOD QUICKSTEP
&DFT
BASIS_SET_FILE_NAME {reference.basis_set_file}
POTENTIAL_FILE_NAME {reference.potential_file}
CHARGE {charge}
&MGRID
CUTOFF [Ry] {reference.cutoff / Rydberg:.10g}
REL_CUTOFF [Ry] {reference.rel_cutoff / Rydberg:.10g}
NGRIDS {reference.ngrids}
&END MGRID
&QS
EPS_PGF_ORB {reference.eps_pgf_orb:.10g}
EPS_FILTER_MATRIX {reference.eps_filter_matrix:.10g}
&END QS
&SCF
SCF_GUESS {scf.guess.upper()}
MAX_SCF {scf.max_scf}
EPS_SCF {scf.eps_scf:.10g}
&OT
MINIMIZER {scf.minimizer}
PRECONDITIONER {scf.preconditioner}
&END OT
&OUTER_SCF
MAX_SCF {scf.outer_max_scf}
EPS_SCF {scf.outer_eps_scf:.10g}
&END OUTER_SCF
&PRINT
&RESTART OFF
&END RESTART
&END PRINT
&END SCF
&XC
{xc}
&END XC
&END DFT
&SUBSYS
{kinds}
&END SUBSYS
&END FORCE_EVAL"""
    root = parse_input(text)
    _merge(root, parse_input(reference.extra_input))
    return "\n".join(root.write()) + "\n"


def _logical(value: bool) -> str:
    return ".TRUE." if value else ".FALSE."


def _data_dir() -> Path:
    return Path(os.environ.get("CP2K_DATA_DIR", "/usr/share/cp2k"))


def _resolve(path: Path, element: str, name: str) -> str:
    """The name of ``element``'s entry in a CP2K basis/potential file that lists ``name``, as its
    ``<name>-qN`` alias (valence electrons spelt out, as in the paper) when it has one."""
    if not path.is_file():
        raise ValueError(f"CP2K data file {path} not found (set CP2K_DATA_DIR or give an absolute path)")
    for line in path.read_text(errors="replace").splitlines():
        tokens = line.split("#", 1)[0].split()
        if len(tokens) > 1 and tokens[0] == element and name in tokens[1:]:
            alias = [token for token in tokens[1:] if re.fullmatch(re.escape(name) + r"-q\d+", token)]
            return alias[0] if alias else name
    raise ValueError(f"no entry {name!r} for element {element} in {path}")


def _merge(base: Any, extra: Any) -> None:
    """Merge the parsed CP2K input ``extra`` into ``base``: keywords replace keywords of the same
    name, sections merge with the section of the same name (KIND: same name and element)."""
    for keyword in extra.keywords:
        name = keyword.split()[0].upper()
        base.keywords = [k for k in base.keywords if k.split()[0].upper() != name] + [keyword]
    for section in extra.subsections:
        same = [s for s in base.subsections if s.name == section.name]
        if section.name == "KIND":
            same = [s for s in same if (s.params or "").upper() == (section.params or "").upper()]
        if not same:
            base.subsections.append(section)
            continue
        if section.params is not None:
            same[0].params = section.params
        _merge(same[0], section)


# --------------------------------------------------------------------------- CP2K calculator


@cache
def _cp2k_class() -> type:
    """ASE's CP2K calculator, made to generate its input from the spec for the atoms it gets
    and to fail loudly: a non-converged SCF or a crashed shell raises ReferenceFailure."""
    from ase.calculators.calculator import all_changes
    from ase.calculators.cp2k import CP2K as AseCP2K

    class SpecCP2K(AseCP2K):
        def __init__(self, reference: CP2K, charge: int, **kwargs: Any) -> None:
            self.reference, self.charge = reference, charge
            # all physics comes from cp2k_input; None stops ASE writing its own sections
            super().__init__(
                **kwargs, inp="", xc=None, basis_set=None, basis_set_file=None, pseudo_potential=None,
                potential_file=None, cutoff=None, max_scf=None, charge=0, force_eval_method=None,
                stress_tensor=True,
            )

        def generated_input(self, atoms: Any) -> str:
            """The complete input file ASE would load into CP2K for ``atoms`` (for inspection)."""
            self.parameters.inp = cp2k_input(self.reference, set(atoms.get_chemical_symbols()), self.charge)
            current, self.atoms = self.atoms, atoms
            try:
                return self._generate_input()
            finally:
                self.atoms = current

        def _generate_input(self) -> str:
            # CP2K keeps at most 80 characters of PROJECT; the shell already runs in ``workdir``
            return super()._generate_input().replace(f"PROJECT {self.label}", f"PROJECT {Path(self.label).name}")

        def calculate(self, atoms: Any = None, properties: Any = None, system_changes: Any = all_changes) -> None:
            if "pbc" in system_changes:  # ASE would keep the old force environment's periodicity
                self._release_force_env()
            if self._force_env_id is None or "numbers" in system_changes:  # ASE will load a new input
                # set-up errors (no basis set for an element, keyword clashes) raise here, not as failures
                self.generated_input(self.atoms if atoms is None else atoms)
            output = Path(self.label + ".out")
            start = output.stat().st_size if output.exists() else 0
            try:
                super().calculate(atoms, properties, system_changes)
            except Exception as exc:
                log, code = _read_from(output, start), self.discard()
                reason = f"{type(exc).__name__}: {exc}" if code is None else f"the CP2K shell exited with code {code}"
                raise ReferenceFailure(f"CP2K failed: {reason}{_abort_message(log)}") from exc
            if "SCF run NOT converged" in _read_from(output, start):
                self._release_force_env()  # the next calculation starts from a fresh input and guess
                self.reset()
                raise ReferenceFailure("CP2K SCF not converged (max_scf/outer_max_scf reached)")

        def discard(self) -> int | None:
            """Stop the shell and forget all results, so the next calculation starts afresh; returns
            the shell's exit code if it had exited by itself (a crash), else None."""
            import subprocess

            shell, self._shell, self._force_env_id = self._shell, None, None
            self.reset()
            child = getattr(shell, "_child", None)
            if child is None:
                return None
            try:
                code = child.wait(timeout=1)
            except subprocess.TimeoutExpired:
                code = None
                child.kill()
            child.communicate()
            shell._child, shell.isready = None, False
            return code

    return SpecCP2K


def _read_from(path: Path, offset: int) -> str:
    """What CP2K appended to its output ``path`` since it was ``offset`` bytes long (all if rewritten)."""
    if not path.exists():
        return ""
    with open(path, "rb") as stream:
        stream.seek(offset if offset <= stream.seek(0, os.SEEK_END) else 0)
        return stream.read().decode(errors="replace")


def _abort_message(log: str) -> str:
    """CP2K's ABORT box text (e.g. the input error) from an output log, or ''."""
    if "[ABORT]" not in log:
        return ""
    words = []
    for line in log[log.rfind("\n", 0, log.index("[ABORT]")) + 1 :].splitlines():
        if set(line.strip()) == {"*"}:  # the box's bottom edge
            break
        words.append(line[11:].strip(" *"))  # the first 11 columns hold the ASCII art
    return ": " + " ".join(" ".join(words).split())
