"""The Dataverse dataset metadata of a campaign, from its manifest (``archive/campaign.json``).

``dataset_json`` gives the body of ``POST /api/dataverses/{alias}/datasets`` in the native API's
format: ``{"datasetVersion": {"license": ..., "metadataBlocks": {"citation": {"fields": [...]}}}}``,
each field ``{"typeName", "typeClass", "multiple", "value"}`` as Dataverse's citation block defines
it. The citation comes from the spec's ``campaign.citation``; what a deposit needs and the spec
lacks is reported at once, each missing field with the spec entry that provides it
(``MetadataError``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

#: Dataverse's controlled vocabulary of the citation block's ``subject``
SUBJECTS = ("Agricultural Sciences", "Arts and Humanities", "Astronomy and Astrophysics", "Business and Management",
            "Chemistry", "Computer and Information Science", "Earth and Environmental Sciences", "Engineering",
            "Law", "Mathematical Sciences", "Medicine, Health and Life Sciences", "Physics", "Social Sciences",
            "Other")

#: SPDX ids of the licenses Dataverse installations ship, as Dataverse names them (others are sent by
#: their SPDX id and must be configured on the server)
LICENSES = {
    "CC0-1.0": ("CC0 1.0", "http://creativecommons.org/publicdomain/zero/1.0"),
    "CC-BY-4.0": ("CC BY 4.0", "http://creativecommons.org/licenses/by/4.0"),
    "CC-BY-SA-4.0": ("CC BY-SA 4.0", "http://creativecommons.org/licenses/by-sa/4.0"),
    "CC-BY-NC-4.0": ("CC BY-NC 4.0", "http://creativecommons.org/licenses/by-nc/4.0"),
    "CC-BY-NC-SA-4.0": ("CC BY-NC-SA 4.0", "http://creativecommons.org/licenses/by-nc-sa/4.0"),
    "CC-BY-ND-4.0": ("CC BY-ND 4.0", "http://creativecommons.org/licenses/by-nd/4.0"),
    "CC-BY-NC-ND-4.0": ("CC BY-NC-ND 4.0", "http://creativecommons.org/licenses/by-nc-nd/4.0"),
}

#: the name of DaRUS's process metadata block and the field names used from it. They follow DaRUS's
#: "process" block ("Process Metadata") only as far as known here: the names are those two
#: independent public DaRUS uploaders send (processMethods*, processMethodsPar*); the block's
#: definition itself was not available, and nothing here was checked against a real DaRUS.
PROCESS_BLOCK = "process"
PROCESS_FIELDS = {
    "method": "processMethods",                      # compound: one entry per method
    "method_name": "processMethodsName",
    "method_description": "processMethodsDescription",
    "parameter": "processMethodsPar",                # compound: one entry per parameter
    "parameter_name": "processMethodsParName",
    "parameter_symbol": "processMethodsParSymbol",
    "parameter_unit": "processMethodsParUnit",
    "parameter_value": "processMethodsParValue",     # a number, as text
    "parameter_text": "processMethodsParTextValue",  # a value that is no number (a SMILES)
}
#: the agency of the citation's ``otherId`` that carries the campaign's key (the manifest's ``key``): how a
#: deposit finds the dataset it created when the server's answer was lost
CAMPAIGN_ID_AGENCY = "ilcampaign"
FORCE_FIELD = "machine-learned potential (apax)"
EV_PER_A3_IN_BAR = 1.602176634e6  # step params hold pressures in eV/A^3


class MetadataError(ValueError):
    """The manifest lacks metadata a deposit needs; ``missing`` lists each field and how to add it."""

    def __init__(self, missing: list[str]):
        self.missing = missing
        super().__init__("the dataset metadata is incomplete: " + "; ".join(missing) + " (the deposit reads "
                         "archive/campaign.json, which `campaign run SPEC` rewrites from the spec)")


def primitive(name: str, value: Any, *, multiple: bool = False) -> dict[str, Any]:
    return {"typeName": name, "multiple": multiple, "typeClass": "primitive", "value": value}


def vocabulary(name: str, value: Any, *, multiple: bool = False) -> dict[str, Any]:
    return {"typeName": name, "multiple": multiple, "typeClass": "controlledVocabulary", "value": value}


def compound(name: str, entries: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    return {"typeName": name, "multiple": True, "typeClass": "compound", "value": entries}


def _entry(**children: Any) -> dict[str, dict[str, Any]]:
    """A compound value: its non-empty children as primitive fields."""
    return {name: primitive(name, value) for name, value in children.items() if value not in (None, "")}


def citation_fields(manifest: Mapping[str, Any], *, subjects: Iterable[str] = ("Chemistry",)) -> list[dict[str, Any]]:
    """The citation block's fields from the manifest's ``citation`` (MetadataError naming every missing
    required field: title, author, contact with an email, description, subject), and the campaign's key
    as an ``otherId``."""
    citation = manifest.get("citation") or {}
    authors = citation.get("authors") or manifest.get("authors") or []
    contact = citation.get("contact") or next(
        ({"name": a["name"], "email": a["email"]} for a in authors if a.get("email")), None)
    description = citation.get("description") or manifest.get("description") or ""
    subjects = list(subjects)
    missing = []
    if not citation.get("title"):
        missing.append("title: add campaign.citation.title to the spec")
    if not authors:
        missing.append("author: add campaign.citation.authors (each with name; affiliation and orcid optional)")
    if not contact or not contact.get("email"):
        missing.append("contact with email: add campaign.citation.contact {name, email} "
                       "(or an email to one of campaign.citation.authors)")
    if not description.strip():
        missing.append("description: add campaign.citation.description to the spec")
    unknown = [subject for subject in subjects if subject not in SUBJECTS]
    if not subjects or unknown:
        missing.append(f"subject: one or more of {', '.join(SUBJECTS)}" + (f" (not {unknown})" if unknown else ""))
    if missing:
        raise MetadataError(missing)
    fields = [
        primitive("title", citation["title"]),
        compound("author", [_author(author) for author in authors]),
        compound("datasetContact", [_entry(datasetContactName=contact.get("name"),
                                           datasetContactEmail=contact["email"])]),
        compound("dsDescription", [_entry(dsDescriptionValue=description.strip())]),
        vocabulary("subject", subjects, multiple=True),
    ]
    if manifest.get("key"):
        fields.append(compound("otherId", [_entry(otherIdAgency=CAMPAIGN_ID_AGENCY, otherIdValue=manifest["key"])]))
    if citation.get("keywords"):
        fields.append(compound("keyword", [_entry(keywordValue=keyword) for keyword in citation["keywords"]]))
    if publication := citation.get("related_publication"):
        entry = _entry(publicationCitation=publication.get("citation"), publicationIDNumber=publication["doi"],
                       publicationURL=f"https://doi.org/{publication['doi']}")
        entry["publicationIDType"] = vocabulary("publicationIDType", "doi")
        fields.append(compound("publication", [entry]))
    if citation.get("funding"):
        fields.append(compound("grantNumber", [_entry(grantNumberAgency=f["agency"], grantNumberValue=f.get("grant"))
                                               for f in citation["funding"]]))
    return fields


def _author(author: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    entry = _entry(authorName=author["name"], authorAffiliation=author.get("affiliation"))
    if author.get("orcid"):
        entry["authorIdentifierScheme"] = vocabulary("authorIdentifierScheme", "ORCID")
        entry["authorIdentifier"] = primitive("authorIdentifier", author["orcid"])
    return entry


def license_of(manifest: Mapping[str, Any]) -> dict[str, str]:
    """The dataset license in Dataverse's form ({name, uri}) for the citation's SPDX id."""
    spdx = (manifest.get("citation") or {}).get("license") or "CC-BY-4.0"
    name, uri = LICENSES.get(spdx, (spdx, f"https://spdx.org/licenses/{spdx}.html"))
    return {"name": name, "uri": uri}


def process_fields(manifest: Mapping[str, Any], records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The process block's fields (see PROCESS_FIELDS; unverified against a real DaRUS): the force
    field as the method; the system's components with their SMILES, and the temperatures and
    pressures of the md and production steps, as its parameters."""
    f = PROCESS_FIELDS
    method = {f["method_name"]: primitive(f["method_name"], FORCE_FIELD),
              f["method_description"]: primitive(f["method_description"], "apax ensembles trained by learning on "
                                                 "the fly; molecular dynamics with the trained potential")}

    def parameter(name: str, *, symbol: str = "", unit: str = "", value: float | None = None,
                  text: str = "") -> dict[str, Any]:
        children = {f["parameter_name"]: name, f["parameter_symbol"]: symbol, f["parameter_unit"]: unit,
                    f["parameter_value"]: None if value is None else f"{value:g}", f["parameter_text"]: text}
        return _entry(**children)

    parameters = [parameter(f"component {name}", text=f"SMILES {smiles}")
                  for name, smiles in components(manifest, records)]
    temperatures, pressures = conditions(records)
    parameters += [parameter("temperature", symbol="T", unit="K", value=t) for t in temperatures]
    parameters += [parameter("pressure", symbol="p", unit="bar", value=p) for p in pressures]
    return [compound(f["method"], [method]), compound(f["parameter"], parameters)]


def components(manifest: Mapping[str, Any], records: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(name, SMILES) of the system's ions: from the molecules or pack steps' params, else the spec text."""
    for record in records:
        ions = (record.get("params") or {}).get("ions")
        if record.get("kind") in ("molecules", "pack") and ions:
            return [(ion["name"], ion["smiles"]) for ion in ions]
    return _spec_ions(manifest.get("spec_text") or "")


def _spec_ions(text: str) -> list[tuple[str, str]]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        spec = YAML(typ="safe").load(text) or {}
        return [(ion["name"], ion["smiles"]) for ion in (spec.get("system") or {}).get("ions") or []]
    except (YAMLError, AttributeError, KeyError, TypeError):  # a spec this reader does not follow: none then
        return []


def conditions(records: Iterable[Mapping[str, Any]]) -> tuple[list[float], list[float]]:
    """The distinct temperatures (K) and NPT pressures (bar) of the md and production steps."""
    temperatures, pressures = set(), set()
    for record in records:
        sampler = (record.get("params") or {}).get("sampler") or {}
        if record.get("kind") not in ("md", "production") or not isinstance(sampler, Mapping):
            continue
        temperature = sampler.get("temperature")
        if isinstance(temperature, Mapping):
            start, end = temperature.get("start"), temperature.get("end")
            temperatures.update(t for t in (start, end) if isinstance(t, (int, float)))
        elif isinstance(temperature, (int, float)):
            temperatures.add(temperature)
        pressure = sampler.get("pressure")
        if sampler.get("ensemble") == "npt" and isinstance(pressure, (int, float)):
            pressures.add(round(pressure * EV_PER_A3_IN_BAR, 6))
    return sorted(round(t, 6) for t in temperatures), sorted(pressures)


def dataset_json(manifest: Mapping[str, Any], *, records: Iterable[Mapping[str, Any]] = (),
                 blocks: Iterable[str] = ("citation",)) -> dict[str, Any]:
    """The native API's dataset JSON; the process block only where ``blocks`` (the collection's
    metadata blocks) offers it."""
    metadata = {"citation": {"displayName": "Citation Metadata", "fields": citation_fields(manifest)}}
    if PROCESS_BLOCK in set(blocks):
        metadata[PROCESS_BLOCK] = {"displayName": "Process Metadata", "fields": process_fields(manifest, list(records))}
    return {"datasetVersion": {"license": license_of(manifest), "metadataBlocks": metadata}}


def digest(body: Mapping[str, Any]) -> str:
    """A stable fingerprint of a metadata body (to tell whether a version's metadata changed)."""
    import hashlib

    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
