"""A finished campaign as a Workflow Run RO-Crate (``ro-crate-metadata.json``), from the archive alone.

The manifest (``campaign.json``: the spec as written and its step graph) is the workflow; each
finished step of that graph is a ``CreateAction`` whose instrument is the software it ran with
(and its reference program) and whose object and result are its inputs' and its own files, named
by their paths in the archive (never copied), so the crate belongs at the archive root or at the
root of a copy with the same layout. Only records' times are used: the same archive gives the
same bytes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rocrate.model import ComputerLanguage, ContextEntity, Person, SoftwareApplication
from rocrate.rocrate import ROCrate

from ilcampaign.archive.atomic import sha256_file
from ilcampaign.archive.store import Archive, ArchiveError

#: the profiles the crate follows beyond the one ``add_workflow`` adds (Workflow RO-Crate 1.1)
PROFILES = {
    "https://w3id.org/ro/wfrun/process/0.6": "Process Run Crate",
    "https://w3id.org/ro/wfrun/workflow/0.6": "Workflow Run Crate",
}
#: defines ``sha256``, the checksum given for every file in the crate
WORKFLOW_RUN_CONTEXT = "https://w3id.org/ro/terms/workflow-run/context"
COMPLETED = {"@id": "http://schema.org/CompletedActionStatus"}
FORMATS = {".h5": "application/x-hdf5", ".nc": "application/x-netcdf", ".json": "application/json"}

Records = dict[str, dict[str, Any]]


def ro_crate(archive_root: str | Path, out_dir: str | Path) -> Path:
    """Write the crate of the archive at ``archive_root`` to ``out_dir``; returns the metadata file."""
    archive = Archive(archive_root)
    manifest = archive.manifest()
    if manifest is None:
        raise ArchiveError(f"{archive.root} has no campaign.json (`campaign run` writes it)")
    index = archive.index()["steps"]
    steps = [step for step in manifest["steps"] if step["key"] in index]  # stale steps of earlier specs left out
    if not steps:
        raise ArchiveError(f"{archive.root}: no step of campaign {manifest['name']} has finished")
    records = {step["key"]: archive.record(step["key"]) for step in steps}

    crate = ROCrate(version="1.3")  # as Workflow Run Crate 0.6 uses
    crate.metadata.extra_contexts.append(WORKFLOW_RUN_CONTEXT)
    _describe(crate, manifest)
    workflow = crate.add_workflow(dest_path="campaign.json", main=True, lang=_language(crate, records), properties={
        "name": manifest["spec_file"], "sha256": sha256_file(archive.manifest_path), "encodingFormat": FORMATS[".json"],
        "description": "the campaign spec as written (spec_text) and the step graph it resolved to",
    })
    for url, name in PROFILES.items():
        profile = ContextEntity(crate, url, {"@type": ["CreativeWork", "Profile"], "name": name,
                                             "version": url.rsplit("/", 1)[1]})
        crate.root_dataset.append_to("conformsTo", crate.add(profile))

    actions = [_step_action(crate, step["key"], records, index) for step in steps]
    start = min(record["started"] for record in records.values())
    end = max(record["finished"] for record in records.values())
    results = {entity.id: entity for action in actions for entity in action.get("result", [])}
    run = crate.add_action(workflow, identifier="#campaign-run", result=list(results.values()), properties={
        "name": f"campaign {manifest['name']}", "startTime": start, "endTime": end, "actionStatus": COMPLETED})
    crate.root_dataset["mentions"] = [run, *actions]
    crate.root_dataset["datePublished"] = end

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    crate.metadata.write(out)
    return out / "ro-crate-metadata.json"


def _describe(crate: ROCrate, manifest: dict[str, Any]) -> None:
    """Name, description and authors of the root dataset; keywords, license, contact, publication
    and funding where the spec's ``campaign.citation`` gives them."""
    citation = manifest.get("citation") or {}
    root = crate.root_dataset
    root["name"] = citation.get("title") or manifest["name"]
    root["description"] = citation.get("description") or manifest["description"] or manifest["name"]
    authors = [_person(crate, author) for author in citation.get("authors") or manifest["authors"]]
    if authors:
        root["author"] = authors
    if citation.get("keywords"):
        root["keywords"] = citation["keywords"]
    if citation.get("license"):
        spdx = citation["license"]
        root["license"] = _context(crate, f"https://spdx.org/licenses/{spdx}", "CreativeWork",
                                   name=spdx, identifier=spdx)
    if contact := citation.get("contact"):
        person = _person(crate, next((a for a in citation["authors"] if a["name"] == contact["name"]), contact))
        person["contactPoint"] = _context(crate, f"mailto:{contact['email']}", "ContactPoint", name=contact["name"],
                                          email=contact["email"], contactType="data contact")
        root["maintainer"] = person
    if publication := citation.get("related_publication"):
        doi = f"https://doi.org/{publication['doi']}"
        root["citation"] = _context(crate, doi, "ScholarlyArticle", identifier=doi, name=publication.get("citation"))
    grants = [
        _context(crate, f"#grant-{index}", "Grant", name=funding.get("grant") or funding["agency"],
                 identifier=funding.get("grant"),
                 funder=_context(crate, f"#funder-{index}", "Organization", name=funding["agency"]))
        for index, funding in enumerate(citation.get("funding", []))
    ]
    if grants:
        root["funding"] = grants


def _context(crate: ROCrate, entity_id: str, kind: str, **properties: Any) -> ContextEntity:
    """A contextual entity (the one already there under ``entity_id``, if any); empty properties left out."""
    found = crate.get(entity_id)
    if found is not None:
        return found
    given = {name: value for name, value in properties.items() if value}
    return crate.add(ContextEntity(crate, entity_id, {"@type": kind, **given}))


def _person(crate: ROCrate, author: dict[str, Any]) -> Person:
    """A Person, under their ORCID where the spec gives one."""
    orcid = author.get("orcid")
    identifier = f"https://orcid.org/{orcid}" if orcid else f"#person-{_slug(author['name'])}"
    person = crate.get(identifier) or crate.add(Person(crate, identifier, {"name": author["name"]}))
    if author.get("email"):
        person["email"] = author["email"]
    if author.get("affiliation"):
        person["affiliation"] = _context(crate, f"#organization-{_slug(author['affiliation'])}", "Organization",
                                         name=author["affiliation"])
    return person


def _slug(text: str) -> str:
    return re.sub(r"\W+", "-", text.lower()).strip("-")


def _language(crate: ROCrate, records: Records) -> ComputerLanguage:
    """The workflow's language: ilcampaign's spec YAML, with ilcampaign's version where all steps agree."""
    versions = {record["software"].get("ilcampaign") for record in records.values()}
    version = {"version": versions.pop()} if len(versions) == 1 and None not in versions else {}
    return crate.add(ComputerLanguage(crate, "#ilcampaign-spec", {
        "name": "ilcampaign campaign spec", "alternateName": "YAML", **version}))


def _step_action(crate: ROCrate, key: str, records: Records, index: Records) -> ContextEntity:
    """The CreateAction of one finished step: its software, input files, output files and times."""
    record = records[key]
    software = [_software(crate, name, version) for name, version in sorted(record["software"].items())]
    action = crate.add_action(
        [*software, *_reference_programs(crate, record)], identifier=f"#step-{key}",
        object=[file for input_key in record["inputs"].values() for file in _files(crate, input_key, records, index)],
        result=_files(crate, key, records, index),
        properties={"name": index[key]["name"], "description": f"{record['kind']} step", "identifier": key,
                    "startTime": record["started"], "endTime": record["finished"], "actionStatus": COMPLETED},
    )
    crate.add_file(dest_path=f"steps/{key}/record.json", properties={
        "name": f"record of {index[key]['name']}", "about": action, "sha256": index[key]["record_sha256"],
        "encodingFormat": FORMATS[".json"]})
    return action


def _software(crate: ROCrate, name: str, version: str) -> SoftwareApplication:
    identifier = f"#software-{name}-{version}"
    return crate.get(identifier) or crate.add(
        SoftwareApplication(crate, identifier, {"name": name, "softwareVersion": version}))


def _reference_programs(crate: ROCrate, record: dict[str, Any]) -> list[SoftwareApplication]:
    """The programs behind a step's labels, as the step recorded them (``programs``: program,
    version, level of theory, url), e.g. tblite GFN2-xTB or CP2K B97-3c."""
    programs: dict[str, SoftwareApplication] = {}
    for program in record.get("programs", []):
        version = program["version"] or "unknown"
        identifier = f"#reference-{program['program'].lower()}-{version}-{program['level']}".replace(" ", "_")
        properties = {"name": f"{program['program']} {program['level']}", "url": program["url"]}
        properties |= {"softwareVersion": program["version"]} if program["version"] else {
            "description": f"{program['program']}'s version could not be read when the step ran"}
        programs[identifier] = crate.get(identifier) or crate.add(SoftwareApplication(crate, identifier, properties))
    return list(programs.values())


def _files(crate: ROCrate, key: str, records: Records, index: Records) -> list[Any]:
    """The output files and blobs of a finished step, as File entities at their archive paths."""
    record, step = records[key], index[key]["name"]
    files = [(f"steps/{key}/{file}", file, digest) for file, digest in sorted(record["outputs"].items())]
    blobs = sorted(record.get("blobs", {}).items())
    files += [(f"blobs/{digest[:2]}/{digest}", blob, digest) for blob, digest in blobs]
    entities = []
    for path, name, digest in files:
        kind = {"encodingFormat": FORMATS[Path(path).suffix]} if Path(path).suffix in FORMATS else {}
        entities.append(crate.get(path) or crate.add_file(
            dest_path=path, properties={"name": f"{step}: {name}", "sha256": digest, **kind}))
    return entities
