// Turning values into text for people, and form values into what the API takes.

/** A datetime-local value (the user's local time) as RFC 3339 in UTC; '' stays ''. */
export function localToRfc3339(v: string): string {
  if (!v) return '';
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) return '';
  return d.toISOString().replace('.000Z', 'Z');
}

export function formatTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(undefined, {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  });
}

export function formatCount(n: number | null | undefined): string {
  return typeof n === 'number' ? n.toLocaleString() : '—';
}

export const OUTCOME_LABEL: Record<string, string> = {
  accepted: 'Accepted',
  duplicate: 'Duplicate',
  late: 'Late',
  rejected: 'Rejected',
  dead_lettered: 'Dead-lettered',
};
