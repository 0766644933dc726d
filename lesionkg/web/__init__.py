"""The lesion explorer (``lesionkg serve``): a read-only web app over the configured Neo4j.

Pages for the overview and cohort filter, a patient, a lesion and a Cypher console, a JSON API
under ``/api/``, and every lesion's picture; every script, style and font ships in ``static/``.
"""
