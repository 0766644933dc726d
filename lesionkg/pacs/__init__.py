"""The PACS connection: a local Orthanc (:mod:`.orthanc`), the DICOMweb pull sync
(:mod:`.dicomweb`) and the DICOM C-STORE receiver (:mod:`.listener`)."""
