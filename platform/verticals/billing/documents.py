"""Invoices as PDF and CSV, and usage as CSV: the downloads of the API and the portal.

The PDF carries the issuer's brand as it was at issue (name, colour, support address): a
partner's tenants see the partner, never the operator.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from django.http import HttpResponse

from verticals.billing.models import Invoice
from verticals.billing.money import format_money, from_minor

LINE_COLUMNS = [
    "position",
    "kind",
    "description",
    "tenant",
    "meter",
    "quantity",
    "included",
    "billable",
    "unit_price",
    "amount",
    "currency",
]


def _line_rows(invoice: Invoice):
    return invoice.lines.select_related("tenant").order_by("position")


def invoice_csv(invoice: Invoice) -> str:
    """One row per line, then the total; amounts in the currency's units (e.g. 12.30), never floats."""
    out = io.StringIO()
    writer = csv.writer(out)
    columns = list(LINE_COLUMNS)
    if invoice.kind == Invoice.Kind.WHOLESALE:
        columns += ["retail_amount", "margin"]
    writer.writerow(
        [
            "invoice",
            invoice.number,
            "kind",
            invoice.kind,
            "currency",
            invoice.currency,
            "period_start",
            invoice.period_start.date().isoformat(),
            "period_end",
            invoice.period_end.date().isoformat(),
        ]
    )
    writer.writerow(columns)
    for line in _line_rows(invoice):
        row = [
            line.position,
            line.kind,
            line.description,
            line.tenant.public_id if line.tenant_id else "",
            line.meter,
            line.quantity,
            line.included,
            line.billable,
            plain(line.unit_price),
            from_minor(line.amount_minor, invoice.currency),
            invoice.currency,
        ]
        if invoice.kind == Invoice.Kind.WHOLESALE:
            retail = line.retail_amount_minor or 0
            row += [
                from_minor(retail, invoice.currency),
                from_minor(retail - line.amount_minor, invoice.currency),
            ]
        writer.writerow(row)
    total = [
        "",
        "total",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        from_minor(invoice.total_minor, invoice.currency),
        invoice.currency,
    ]
    if invoice.kind == Invoice.Kind.WHOLESALE:
        total += [
            from_minor(invoice.retail_total_minor or 0, invoice.currency),
            from_minor(invoice.margin_minor or 0, invoice.currency),
        ]
    writer.writerow(total)
    return out.getvalue()


def plain(value: Decimal | None) -> str:
    """A Decimal as people write it: 30, 0.0025, never 3E+1."""
    return "0" if not value else f"{value.normalize():f}"


def usage_csv(rows: list[dict], group_by) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*group_by, "quantity", "events"])
    for row in rows:
        writer.writerow(
            [
                *(row.get(name) if row.get(name) is not None else "" for name in group_by),
                row["quantity"],
                row["events"],
            ]
        )
    return out.getvalue()


def _rgb(colour: str) -> tuple[int, int, int]:
    try:
        return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)
    except (ValueError, TypeError, IndexError):
        return 31, 111, 235


def _text(value) -> str:
    """fpdf's core fonts speak Latin-1: anything else becomes '?' rather than failing the download."""
    return str(value).encode("latin-1", "replace").decode("latin-1")


TITLES = {
    Invoice.Kind.RETAIL: "Invoice",
    Invoice.Kind.WHOLESALE: "Wholesale invoice",
    Invoice.Kind.CREDIT_NOTE: "Credit note",
}


def invoice_pdf(invoice: Invoice) -> bytes:
    from fpdf import FPDF

    brand = invoice.brand or {}
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_title(_text(f"{TITLES[invoice.kind]} {invoice.number}"))
    pdf.set_author(_text(brand.get("name", "")))
    pdf.add_page()
    pdf.set_fill_color(*_rgb(brand.get("colour", "")))
    pdf.rect(0, 0, 210, 8, style="F")
    pdf.set_y(14)
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 9, _text(brand.get("name", "")), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    if brand.get("support_email"):
        pdf.cell(0, 5, _text(f"Support: {brand['support_email']}"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 14)
    pdf.cell(0, 8, _text(f"{TITLES[invoice.kind]} {invoice.number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    facts = [
        ("Billed to", (invoice.bill_to or {}).get("name", "")),
        ("Period", f"{invoice.period_start:%Y-%m-%d} to {invoice.period_end:%Y-%m-%d}"),
        ("Issued", f"{invoice.issued_at:%Y-%m-%d %H:%M} UTC"),
    ]
    if invoice.credits_id:
        facts.append(("Corrects", invoice.credits.number))
    if invoice.reason:
        facts.append(("Reason", invoice.reason))
    for label, value in facts:
        pdf.cell(30, 5, _text(label))
        pdf.cell(0, 5, _text(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    widths = [92, 28, 30, 40]
    pdf.set_font("Helvetica", "B", 9)
    for width, title in zip(widths, ["Item", "Billable", "Unit price", "Amount"], strict=True):
        pdf.cell(width, 6, title, border="B", align="L" if title == "Item" else "R")
    pdf.ln()
    pdf.set_font("Helvetica", "", 9)
    for line in _line_rows(invoice):
        billable = line.billable if line.kind == "usage" else line.quantity
        cells = [
            line.description,
            f"{billable:,}",
            plain(line.unit_price),
            format_money(line.amount_minor, invoice.currency),
        ]
        for width, value, align in zip(widths, cells, "LRRR", strict=True):
            pdf.cell(width, 6, _text(value)[:60], align=align)
        pdf.ln()
        if line.kind == "usage":
            pdf.set_text_color(90, 90, 90)
            pdf.cell(
                0,
                4,
                _text(f"   {line.quantity:,} used, {line.included:,} included"),
                new_x="LMARGIN",
                new_y="NEXT",
            )
            pdf.set_text_color(0, 0, 0)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(sum(widths[:3]), 8, "Total", border="T")
    pdf.cell(
        widths[3],
        8,
        _text(format_money(invoice.total_minor, invoice.currency)),
        border="T",
        align="R",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    if invoice.kind == Invoice.Kind.WHOLESALE and invoice.retail_total_minor is not None:
        pdf.set_font("Helvetica", "", 10)
        for label, minor in (
            ("Billed to your tenants", invoice.retail_total_minor),
            ("Your margin", invoice.margin_minor),
        ):
            pdf.cell(sum(widths[:3]), 6, label)
            pdf.cell(
                widths[3],
                6,
                _text(format_money(minor, invoice.currency)),
                align="R",
                new_x="LMARGIN",
                new_y="NEXT",
            )
    return bytes(pdf.output())


def invoice_response(invoice: Invoice, fmt: str) -> HttpResponse:
    """The invoice as a download (`pdf` or `csv`), for the API and the portal alike: the PDF
    carries the brand stored on the invoice, the CSV its lines. Never kept by a shared cache or
    the browser: an invoice is one party's business."""
    if fmt == "pdf":
        response = HttpResponse(invoice_pdf(invoice), content_type="application/pdf")
    else:
        response = HttpResponse(invoice_csv(invoice), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{invoice.number}.{fmt}"'
    response["Cache-Control"] = "private, no-store"
    return response
