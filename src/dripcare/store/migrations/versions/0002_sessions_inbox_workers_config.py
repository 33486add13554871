"""EHR appointment ids, handled replies, real-time heartbeats, clinic file state, shared send rate

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import dripcare.store.models


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('treatment_session', schema=None) as batch_op:
        batch_op.add_column(sa.Column('external_id', sa.String(), nullable=True))
        batch_op.create_unique_constraint('uq_treatment_session_external_id', ['external_id'])
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('handled_at', dripcare.store.models.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('handled_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('handled_note', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.create_unique_constraint('uq_inbound_message_sid_patient', ['provider_sid', 'patient_id'])
    with op.batch_alter_table('worker', schema=None) as batch_op:
        batch_op.add_column(sa.Column('simulated_at', dripcare.store.models.UTCDateTime(), nullable=True))
    # The processes re-record their files on start: nothing of the old table is worth keeping.
    op.drop_table('campaign_file')
    op.create_table('config_file',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('digest', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('loaded_at', dripcare.store.models.UTCDateTime(), nullable=False),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('send_rate',
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('next_at', dripcare.store.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('channel')
    )


def downgrade() -> None:
    op.drop_table('send_rate')
    op.drop_table('config_file')
    op.create_table('campaign_file',
    sa.Column('campaign_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('digest', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('loaded_at', dripcare.store.models.UTCDateTime(), nullable=False),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('campaign_id')
    )
    with op.batch_alter_table('worker', schema=None) as batch_op:
        batch_op.drop_column('simulated_at')
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.drop_constraint('uq_inbound_message_sid_patient', type_='unique')
        batch_op.drop_column('handled_note')
        batch_op.drop_column('handled_by')
        batch_op.drop_column('handled_at')
    with op.batch_alter_table('treatment_session', schema=None) as batch_op:
        batch_op.drop_constraint('uq_treatment_session_external_id', type_='unique')
        batch_op.drop_column('external_id')
