"""The incentives report (issue 23; Hebei's opinions, sections 3(4) and 3(7)): what each
organisation's deals of a year earn under the province's policy, totals by region, kind,
transaction type and month, CSV/XLSX exports and SVG charts. Operators only."""
