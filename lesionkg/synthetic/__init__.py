"""SYNTHETIC data generators (cohort CSV, phantom CT, DICOM, bookmarks): made-up patients, never
real data, labelled synthetic wherever they land."""
